"""The Kubernetes API: `gateway` reads and writes objects (the only module that imports the
official client), `leader` holds the Lease. Nothing here knows about OAuth.
"""
