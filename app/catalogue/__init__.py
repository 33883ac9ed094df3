"""The catalogue web page (/catalogue): a blueprint with its templates and stylesheet beside it,
server-rendered with Jinja (no front-end build step, no JavaScript). It calls the same functions as the
API (store queries, similarity search, analysis), never the API over HTTP."""
