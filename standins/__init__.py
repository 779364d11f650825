"""Local stand-ins for the outside systems Doorstep talks to (CRMs, helpdesks, model endpoints, webhook
receivers): real HTTP servers on loopback that answer with the vendors' recorded response shapes.

Tests start them to exercise the real client code without reaching the internet; the demo runs them so
its connectors have something real to talk to. They are development tools, never part of production.
"""
