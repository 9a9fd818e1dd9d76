"""Ready-made bus subscribers and the demo, built only on fsmc's runtime API.

- `fsmc.contrib.usage`: the usage meter, CloudStack-style usage records in SQLite;
- `fsmc.contrib.usage_report`: usage per resource and account over a time window;
- `fsmc.contrib.audit`: every event as one JSON line (the raw trail);
- `fsmc.contrib.counters`: live counts per machine and event;
- `fsmc.contrib.simulation`, `fsmc.contrib.cloud`, `fsmc.contrib.resources`,
  `fsmc.contrib.progress`, `fsmc.contrib.demo`: a simulated cloud driven through the
  generated CloudStack machines (`fsmc demo`); these import `generated`, so they run from a
  checkout of fsmc.

Nothing in `fsmc.runtime` imports this package.
"""
