# Run-level tables and the index page that links every report. The shard manifests
# list the images of this run, so images that an earlier run with another image list
# left in the results folder are not included.
rule summary:
    input:
        manifests=expand(out("shards/{shard}.manifest.json"), shard=SHARDS),
        config=out("config.yaml"),
    output:
        images=report(
            out("images.tsv"),
            caption="../report/images.rst",
            category="Run summary",
        ),
        conditions=report(
            out("conditions.tsv"),
            caption="../report/conditions.rst",
            category="Run summary",
        ),
        tiles=report(
            out("tables/tiles.parquet"),
            caption="../report/tiles.rst",
            category="Run summary",
        ),
        index=report(
            out("index.html"),
            caption="../report/index.rst",
            category="Run summary",
        ),
    log:
        out("logs/summary.log"),
    localrule: True
    # One image's tables at a time in memory: under 400 MB for 2,000 images of 60 tiles.
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    run:
        run_vlm_micro(
            [
                "summarize",
                "--results",
                OUT,
                "--config",
                input.config,
                "--image-list",
                *input.manifests,
            ],
            log[0],
        )
