"""The browser UI: server-rendered pages (Jinja2), one CSS file and one small script."""
