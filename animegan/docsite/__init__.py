"""The docs site's machinery: the reference generated from the code at build time, and its checks.

``hooks`` is the mkdocs hook (``mkdocs.yml``) that fills every ``<!-- generated: NAME -->`` marker
of a page with the table ``reference.render(NAME)`` makes from the code: the settings classes, the
problem types, the metric families, the Redis keys, the compose file's variables. ``variables`` and
``links`` give the tests what the site must contain and link to. Tooling only: imported by mkdocs and
the tests, never by a serving process.
"""
