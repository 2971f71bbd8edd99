"""core has no models; this module exists so that post_migrate fires for it (core.rls)."""
