"""The generic sweep engine: specs and cells (``spec``), cell runners (``runners``), running
the missing cells (``execute``) and the resumable result store (``store``).

Nothing here imports the attacks: what a cell computes is its runner's business.
"""
