"""The HTTP side of metadata delivery: the metadata API and its helpers.

Nothing here renders guest-visible bytes; it decides which instance asks
(:mod:`identity`), caches what :mod:`metadata_content.tree` rendered
(:mod:`cache`) and serves it (:mod:`api`, :mod:`serve`).
"""
