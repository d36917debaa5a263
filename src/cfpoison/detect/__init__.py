"""cfpoison.detect"""
