"""Cloud TPU VM job submission: `python -m bert_jax.launch {up,run,status,logs,stop,down,watch}`.

The launcher drives the `gcloud` CLI the user has already authenticated (no API client of its own):

    accelerators.py  accelerator types -> chips, hosts, devices; zone, name and runtime-version checks
    gcloud.py        pure functions returning `gcloud` argv lists (create, describe, delete, ssh, scp)
    remote.py        the shell scripts run on every worker (install, start detached, state, stop, tail)
    resources.py     `describe` output -> ready / pending / dead / absent
    secrets.py       `--env NAME` values: the env file shipped to workers, and redaction of everything printed
    runner.py        runs argv lists (or prints them under --dry_run), checks that gcloud is installed and logged in
    wheel.py         builds the project wheel and stages the files shipped to the workers
    jobs.py          the job description built from the command line, validated before anything is created
    commands.py      the subcommands
    cli.py           argument parsing
"""
