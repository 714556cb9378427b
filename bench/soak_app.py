"""The app the soak's Redis phase serves: ``tether serve soak_app:app --store redis://...``.

``put(key, value)`` writes one value to the shared store and returns it, so a
result is an acknowledged write the soak can look up in Redis afterwards.
"""

from __future__ import annotations

from tether import App

app = App("tether soak: acknowledged store writes")

KEY_PREFIX = "soak:"


@app.function(inputs=["text", "number"], outputs="number")
async def put(key: str, value: int) -> int:
    """Store ``value`` under ``soak:<key>`` and return it once the store has it."""
    await app.store.set(KEY_PREFIX + key, value)
    return value
