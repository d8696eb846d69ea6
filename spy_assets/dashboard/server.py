"""Start the dashboard: Streamlit serving ``app.py`` on 127.0.0.1, read-only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spy_assets import config

APP = Path(__file__).with_name("app.py")
HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def streamlit_argv(port: int) -> list[str]:
    """The command line that serves the app on 127.0.0.1:port with nothing sent anywhere."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        f"--server.address={HOST}",
        f"--server.port={port}",
        "--server.headless=true",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        f"--browser.serverAddress={HOST}",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=none",
        "--global.developmentMode=false",
        "--theme.base=light",
    ]


def serve(port: int = DEFAULT_PORT) -> None:
    """Validate the environment, say where the app is, then become the Streamlit server."""
    settings = config.load()  # a bad variable stops here with one line
    print(
        f"Dashboard on http://{HOST}:{port} (data: {settings.data_dir}); Ctrl-C stops it",
        flush=True,
    )
    os.execv(sys.executable, streamlit_argv(port))
