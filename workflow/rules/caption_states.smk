rule caption_states:
    output:
        directory(artifact("caption_states")),
    input:
        package("caption-states"),
        base=lambda w: artifact("model", model=IMAGE_TEXT["text_model"], variant=ZERO_SHOT),
        corpus=lambda w: corpus_split(w.split)(w),
    params:
        states=stage_params("caption-states"),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: job_threads("caption_states")
    resources:
        **job_resources("caption_states"),
    log:
        log_file("caption_states", "{corpus}/{split}"),
    benchmark:
        benchmark_file("caption_states", "{corpus}/{split}")
    conda:
        ENV
    shell:
        stage_command("caption_states", "states", corpus="{params.corpus}")
