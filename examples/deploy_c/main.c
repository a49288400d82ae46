/* Run a model exported by ember.export from C, with no Python.
 *
 *   ./run_model input0.bin [input1.bin ...]
 *
 * Each input file holds the raw bytes of one input (C order, the dtype and shape the package was
 * exported for; e.g. numpy's x.astype("float32").tofile("input0.bin")). The program runs the model once
 * and prints every output as a line "name dtype d0xd1x..." followed by one value per line ("%.9g" for
 * floating point, so a float32 reads back exactly), which is what ember.runtime.load(path)(x) returns.
 *
 * Everything model-specific comes from the package's C ABI (ember_input_info, ember_run, ...), declared
 * in the header ember.export writes next to the library; the Makefile passes its name as
 * EMBER_MODEL_HEADER.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EMBER_MODEL_HEADER
#error "compile with -DEMBER_MODEL_HEADER='\"path/to/model.h\"' (the header ember.export wrote)"
#endif
#include EMBER_MODEL_HEADER

static void *read_input(const char *path, const ember_tensor_info *info) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "run_model: cannot open %s\n", path);
        return NULL;
    }
    void *buf = malloc(info->nbytes > 0 ? (size_t)info->nbytes : 1);
    size_t got = buf ? fread(buf, 1, (size_t)info->nbytes, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!buf || got != (size_t)info->nbytes || extra) {
        fprintf(stderr, "run_model: %s must hold exactly %lld bytes (input '%s', %s)\n", path,
                (long long)info->nbytes, info->name, info->dtype);
        free(buf);
        return NULL;
    }
    return buf;
}

static void print_value(const char *dtype, const void *data, int64_t i) {
    if (!strcmp(dtype, "float32")) printf("%.9g\n", (double)((const float *)data)[i]);
    else if (!strcmp(dtype, "float64")) printf("%.17g\n", ((const double *)data)[i]);
    else if (!strcmp(dtype, "int64")) printf("%lld\n", (long long)((const int64_t *)data)[i]);
    else if (!strcmp(dtype, "int32")) printf("%d\n", (int)((const int32_t *)data)[i]);
    else if (!strcmp(dtype, "bool") || !strcmp(dtype, "uint8")) printf("%d\n", ((const uint8_t *)data)[i]);
    else printf("(%s value)\n", dtype);
}

static void print_output(const ember_tensor_info *info, const void *data) {
    printf("%s %s ", info->name, info->dtype);
    for (int32_t d = 0; d < info->ndim; d++) printf(d ? "x%lld" : "%lld", (long long)info->shape[d]);
    printf("\n");
    for (int64_t i = 0; i < info->numel; i++) print_value(info->dtype, data, i);
}

int main(int argc, char **argv) {
    int32_t n_in = ember_num_inputs(), n_out = ember_num_outputs();
    if (argc - 1 != n_in) {
        fprintf(stderr, "usage: %s", argv[0]);
        for (int32_t i = 0; i < n_in; i++) fprintf(stderr, " %s.bin", ember_input_info(i)->name);
        fprintf(stderr, "\nmodel %s takes %d input(s)\n", ember_model_name(), n_in);
        return 2;
    }
    void **inputs = calloc((size_t)n_in + 1, sizeof(void *));
    void **outputs = calloc((size_t)n_out + 1, sizeof(void *));
    int status = 0;
    for (int32_t i = 0; i < n_in && !status; i++)
        if (!(inputs[i] = read_input(argv[i + 1], ember_input_info(i)))) status = 2;
    for (int32_t i = 0; i < n_out && !status; i++)
        if (!(outputs[i] = malloc((size_t)ember_output_info(i)->nbytes + 1))) status = 3;
    if (!status && (status = ember_run(inputs, outputs, 0)) != 0)
        fprintf(stderr, "run_model: ember_run failed with status %d (%s)\n", status,
                status == 3 ? "this CPU lacks instructions the model was compiled for" : "out of memory");
    for (int32_t i = 0; i < n_out && !status; i++) print_output(ember_output_info(i), outputs[i]);
    for (int32_t i = 0; i < n_in; i++) free(inputs[i]);
    for (int32_t i = 0; i < n_out; i++) free(outputs[i]);
    free(inputs);
    free(outputs);
    return status;
}
