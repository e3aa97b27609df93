rule search:
    output:
        expand(artifact("runs", "{setting}.parquet"), setting=SETTINGS, allow_missing=True),
        manifest=artifact_manifest(artifact("runs")),
    input:
        package("search"),
        embeddings=artifact("embeddings"),
        corpus=corpus_split("test"),
    params:
        search=stage_params("search"),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("search")
    resources:
        **job_resources("search"),
    log:
        log_file("search", "{model}/{variant}/{corpus}"),
    benchmark:
        benchmark_file("search", "{model}/{variant}/{corpus}")
    conda:
        ENV
    shell:
        stage_command("search", "search", corpus="{params.corpus}", out="{params.out}")


rule evaluate:
    output:
        expand(artifact("metrics", "{name}"), name=METRIC_FILES, allow_missing=True),
        manifest=artifact_manifest(artifact("metrics")),
    input:
        package("evaluate"),
        runs=expand(artifact("runs", "{setting}.parquet"), setting=SETTINGS, allow_missing=True),
        runs_manifest=artifact_manifest(artifact("runs")),
        corpus=corpus_split("test"),
    params:
        evaluation=stage_params("evaluate"),
        run=lambda w, input: parent_dir(input.runs[0]),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        log_file("evaluate", "{model}/{variant}/{corpus}"),
    benchmark:
        benchmark_file("evaluate", "{model}/{variant}/{corpus}")
    conda:
        ENV
    shell:
        stage_command("evaluate", "evaluation", run="{params.run}", corpus="{params.corpus}", out="{params.out}")


rule evaluate_image_text:
    output:
        expand(artifact("image_text_metrics", "{name}"), name=METRIC_FILES, allow_missing=True),
        manifest=artifact_manifest(artifact("image_text_metrics")),
    input:
        package("evaluate-image-text"),
        unpack(image_text_run_inputs),
        split=corpus_split("test"),
    params:
        evaluation=stage_params("evaluate-image-text"),
        corpus=lambda w, input: parent_dir(input.split[0]),
        states=lambda w, input: optional_path("states", input.states),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("evaluate_image_text")
    resources:
        **job_resources("evaluate_image_text"),
    log:
        log_file("evaluate_image_text", "{corpus}/{run}"),
    benchmark:
        benchmark_file("evaluate_image_text", "{corpus}/{run}")
    conda:
        ENV
    shell:
        stage_command("evaluate_image_text", "evaluation", corpus="{params.corpus}", out="{params.out}")
