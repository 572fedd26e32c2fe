"""oscar-bridge: OSCAR serverless services for Node-RED, Apache NiFi 2 and MQTT.

The package holds one OSCAR client and codec (`bridge.oscar`), the embedded local
OSCAR-compatible runtime (`bridge.local`), the bridge HTTP service (`bridge.server`)
and the command line (`bridge.cli`).
"""

__version__ = "0.1.0"
