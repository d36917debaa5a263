"""Stored cells rendered: aggregated tables (``tables``), figures (``figures``) and the
Markdown/HTML/JSON report (``report``). Reads rows; computes nothing new.
"""
