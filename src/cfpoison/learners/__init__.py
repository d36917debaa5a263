"""cfpoison.learners"""
