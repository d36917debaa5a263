"""cfpoison.attacks"""
