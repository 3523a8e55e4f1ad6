"""The Kubernetes API, the only package that imports the official client: `api` sends one
request, `errors` translates what it raises, `gateway` reads and writes objects, `listing` asks
how kopf is to list, `secret_watch` follows Secrets' metadata, `leader` holds the Lease. Nothing
here knows about OAuth.
"""
