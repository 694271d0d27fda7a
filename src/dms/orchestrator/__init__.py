"""The requester side of deployments: matching, bidding, commit, supervision, restore.

Must not import: node, app, api, cli.
"""
