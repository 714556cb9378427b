"""Several tether nodes as one service, through Redis.

- ``channels``: every Redis name (keys, session records, topic channels) and
  the app's namespace, spelled in one place;
- ``bridge``: ``RedisBridge``, topics across nodes over Redis pub/sub.

Nothing is imported here, so ``tether.cluster.channels`` stays light and
``redis`` stays optional.
"""
