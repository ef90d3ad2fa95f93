"""streamapp: real-time sentiment and hate-speech monitor on Kafka, Faust and Elasticsearch.

`faust -A streamapp worker` imports this package and uses `app`; importing the agents,
tables and views here registers them on it.
"""

from streamapp import agents, dashboard, tables, views  # noqa: F401 - registration side effects
from streamapp.app import app

__version__ = "0.1.0"
__all__ = ["app"]
