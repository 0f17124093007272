"""The Starlette web app (``create_app``) and the bundled explorer front end (``static/``)."""
