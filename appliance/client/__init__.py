"""The golden-client program (siclient.py) and the HTTP route that serves it."""
