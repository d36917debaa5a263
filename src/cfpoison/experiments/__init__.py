"""cfpoison.experiments"""
