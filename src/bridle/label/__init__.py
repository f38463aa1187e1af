"""The human-feedback labelling app: annotators choose the better of two responses in the browser; the votes become
preference rows for `bridle rm` / `bridle dpo` and human verdicts for win rates.

    candidates.py  candidate files → pairs          db.py      SQLite (WAL) schema, annotators, sessions
    assign.py      who sees which pair; votes       app.py     the FastAPI app (pages + JSON API)
    security.py    size limits, headers, origins    render.py  model text → safe HTML
    export.py      votes → preference / verdict rows   stats.py, agreement.py  progress, gold accuracy, kappa
    active.py      reward-model uncertainty order   server.py  `bridle label serve`

Nothing here imports the web stack until a server is built, so `bridle label export` works without it.
"""
