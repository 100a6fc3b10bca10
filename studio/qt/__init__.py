"""Shared Qt adapters of the studio (key forwarding, thread bases); no feature imports another through here."""
