"""The sync's page preparation: everything here runs without Django and without a
database, and is all the sync's prefetch child process imports (with ``client``,
``listing`` and ``exceptions``).

- ``crawl``: a partitioned crawl of ``customers.list``, a thread per window (``windows``),
  merged into one stream of prepared pages;
- ``rawpages``: the pages as bytes, recalled by digest or sliced per customer;
- ``preparer``: which customers changed (``fingerprints``, ``pagememo``), parsed into the
  writer's rows (``records``, ``fieldreaders``, ``copytext``), with the list's catalogue
  fields trusted (``trust``);
- ``entitypages``, ``entityreader``, ``entityrecords``: ``entities.list`` pages, recalled
  by digest or read into records with their rows;
- ``prefetch``: the child process itself and its pipe (it serves either pass).

What touches the database (runs, writers, the passes, the workflow) is in ``sync``.
"""
