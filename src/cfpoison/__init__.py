"""cfpoison: data poisoning attacks on factorization-based collaborative filtering.

Reference implementation of Li, Wang, Singh and Vorobeychik, *Data Poisoning Attacks on
Factorization-Based Collaborative Filtering* (NIPS 2016), with exact implicit gradients,
detectors and defenses. Users x items everywhere; ratings on the shifted scale [-2, 2]
internally, the data set's own scale at the edges.
"""

__version__ = "0.1.0"
