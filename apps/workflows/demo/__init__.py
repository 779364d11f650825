"""Demo systems of record (a CRM + helpdesk in SQLite) and the ML models that run against them.

Deliberately free of Django imports so the pieces can be built and tested on their own.
"""
