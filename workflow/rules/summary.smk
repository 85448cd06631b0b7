# Run-level tables and the index page that links every report.
# NOTE: `vlm-micro summarize` lists every status file in the results folder, so images
# of an earlier run on the same folder with another image list are included too.
rule summary:
    input:
        reports=expand(out("shards/{shard}.reports.json"), shard=SHARDS),
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
    run:
        run_vlm_micro(["summarize", "--results", OUT, "--config", input.config], log[0])
