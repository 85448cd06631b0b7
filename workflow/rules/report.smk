# Write the HTML (and PDF) report of every image of one shard, failed images
# included, then a marker that lists them.
rule report_shard:
    input:
        manifest=out("shards/{shard}.manifest.json"),
        config=out("config.yaml"),
    output:
        out("shards/{shard}.reports.json"),
    log:
        out("logs/report/{shard}.log"),
    benchmark:
        out("benchmarks/report/{shard}.tsv")
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        image_ids=get_shard_image_ids,
    run:
        report_images(params.image_ids, input.config, output[0], log[0])
