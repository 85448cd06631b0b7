# The configuration of the run, with every default filled in, for the commands below.
rule effective_config:
    output:
        out("config.yaml"),
    log:
        out("logs/effective_config.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        values=dict(config),
    run:
        write_config_file(output[0], params.values)


# The image list, labelling settings and report settings of one shard, as the JSON
# file that `vlm-micro process-shard` reads. It is rewritten when the images of the
# shard, their files (size and modification time) or the settings change, which makes
# the shard run again. Images labelled with the same labelling settings from unchanged
# files are reused, so a change of the report settings only rewrites the reports.
rule shard_image_list:
    output:
        out("shards/{shard}.images.json"),
    log:
        out("logs/shards/{shard}.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        images=get_shard_entries,
        sources=get_shard_sources,
        settings=SETTINGS,
        report=config["report"],
        job_log=lambda wildcards: out(f"logs/label/{wildcards.shard}.log"),
    run:
        write_shard_file(
            output[0],
            wildcards.shard,
            OUT,
            params.settings,
            params.images,
            params.job_log,
            params.report,
        )


# Label the images of one shard and write their reports: the model is loaded once,
# each image gets its tables, thumbnail and status file, and a failing image fails
# alone. A background process writes the HTML (and PDF) report and the exports of
# each finished image, failed ones included, while the next image is labelled. The
# manifest is written last.
rule label_shard:
    input:
        images=out("shards/{shard}.images.json"),
        labels=config["labels"],
    output:
        manifest=out("shards/{shard}.manifest.json"),
    log:
        out("logs/label/{shard}.log"),
    benchmark:
        out("benchmarks/label/{shard}.tsv")
    threads: config["workflow"]["threads"]
    resources:
        mem_mb=get_label_mem_mb,
        runtime=get_label_runtime,
        gpu=wants_gpu(config["model"]["device"]),
    run:
        run_vlm_micro(
            [
                "process-shard",
                input.images,
                "--manifest",
                output.manifest,
                "--threads",
                threads,
            ],
            log[0],
        )
