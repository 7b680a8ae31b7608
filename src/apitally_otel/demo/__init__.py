"""``apitally-otel demo``: a FastAPI app (:mod:`.app`) under uvicorn in a subprocess, monitored into a
local hub, driven by simulated traffic (:mod:`.traffic`); :mod:`.run` orchestrates and prints the
report. Nothing here imports FastAPI except :mod:`.app` (FastAPI is the optional ``fastapi`` extra).
"""
