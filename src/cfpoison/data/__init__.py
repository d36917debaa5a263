"""cfpoison.data"""
