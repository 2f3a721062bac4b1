"""The operator's console: what the web page at / and its API show, and the host actions.

views.py turns store records into what an operator reads (a host's state, its next boot);
actions.py changes hosts (the CLI's `si hosts` commands use the same functions);
token.py is the operator token that actions need; routes.py serves all of it over HTTP.
"""
