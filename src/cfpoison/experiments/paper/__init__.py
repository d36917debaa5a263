"""The paper's experiments as sweeps: Figures 1 and 2 (``figures_1_2``), SGLD's beta
trade-off (``beta_tradeoff``) and the three-method demo (``demo``).
"""
