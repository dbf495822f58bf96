"""The reference e-commerce system of the articles, one bounded context per package.

Contexts share nothing but integration event contracts (each context's
``contracts.py``); each has its own database. ``tidings demo`` runs them all.
"""

CONTEXTS = ("identity", "catalog", "basket", "ordering", "payments", "inventory", "notifications")
