"""The generic sweep engine: specs and cells (``spec``), cell runners (``runners``), running
the missing cells (``execute``), the resumable result store (``store``) and the cell leases
that let runners share a store (``leases``).

Nothing here imports the attacks: what a cell computes is its runner's business.
"""
