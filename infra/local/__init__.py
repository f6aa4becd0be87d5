"""The local stack: `offload dev` on moto, and the stand-ins for what moto lacks (Lambda's
runtime API, scheduled events, an LLM endpoint, a faulty network)."""
