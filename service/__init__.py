"""tcgen's running parts: the command line (cli/), the engine (engine/), the REST service
(app.py, api/, server.py) and its client (client.py). See the README's Layout."""
