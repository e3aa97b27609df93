rule image_features:
    output:
        directory(artifact("features")),
    input:
        package("image-features"),
        corpus=lambda w: list(dict.fromkeys(path for split in SPLITS for path in corpus_split(split)(w))),
        raw=artifact("raw"),
        model=tower_model_dir,
    params:
        tower=stage_params("image-features"),
        corpus=lambda w, input: parent_dir(input.corpus[0], 2),
        model=lambda w, input: optional_path("model", input.model),
    threads: job_threads("image_features")
    resources:
        **job_resources("image_features"),
    log:
        log_file("image_features", "{tower}/{corpus}"),
    benchmark:
        benchmark_file("image_features", "{tower}/{corpus}")
    conda:
        ENV
    shell:
        stage_command("image_features", "tower", corpus="{params.corpus}")
