"""The orchestration part of the GraphQL API (the web app's reads and UI actions on runs).

Everything hangs off one root field, ``orchestration(workspace: String!)``: null for a slug the
viewer is not a member of, otherwise an object whose fields read that workspace only, with the
viewer's Principal and the same ``authorize`` as REST (see ``schema.py``).
"""
