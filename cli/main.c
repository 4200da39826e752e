/* flashkm: the command-line front door. Subcommand dispatch and help. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef FLASHKM_HAVE_FAISS
/* Subcommands that compare with or build FAISS indexes need the bridge. */
static int without_faiss(const char *cmd, int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: flashkm %s ...\n\nThis flashkm was built without the FAISS bridge: '%s' "
             "is not available.\nInstall libfaiss-dev and rebuild to enable it.\n",
             cmd, cmd);
      return FKM_EXIT_OK;
    }
  fkm_cli_error("'%s' needs the FAISS bridge, and this flashkm was built without it "
                "(install libfaiss-dev and rebuild)", cmd);
  return FKM_EXIT_FAIL;
}
int fkm_cli_cmd_build_ivf(int argc, char **argv) { return without_faiss("build-ivf", argc, argv); }
int fkm_cli_cmd_parity(int argc, char **argv) { return without_faiss("parity", argc, argv); }
int fkm_cli_cmd_bench(int argc, char **argv) { return without_faiss("bench", argc, argv); }
int fkm_cli_cmd_demo(int argc, char **argv) { return without_faiss("demo", argc, argv); }
#endif

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"train", fkm_cli_cmd_train, "train centroids on a vector file"},
    {"build-ivf", fkm_cli_cmd_build_ivf, "train, fill and write a FAISS IVF index"},
    {"parity", fkm_cli_cmd_parity, "check flashkm against faiss::Clustering (P1/P2/P3)"},
    {"bench", fkm_cli_cmd_bench, "training time side by side with stock FAISS"},
    {"demo", fkm_cli_cmd_demo, "IVF1024,Flat on Fashion-MNIST, flashkm vs FAISS"},
};

static void usage(FILE *fp) {
  fprintf(fp,
          "usage: flashkm COMMAND [options]   (flashkm COMMAND --help for details)\n\n"
          "Exact k-means: the centroids FAISS computes, bit for bit, faster.\n\n"
          "Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(fp,
          "\nOther options:\n  --version  library and build information\n  --help     this text\n"
          "\nExit codes: 0 success, 1 failure (error, or a parity level failed),\n"
          "2 bad command line, 130 interrupted by Ctrl-C.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return FKM_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  fkm_cli_signals_install();
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return FKM_EXIT_OK;
  }
  if (!strcmp(cmd, "--version")) {
#ifdef FLASHKM_HAVE_FAISS
    const char *faiss = "with FAISS";
#else
    const char *faiss = "without FAISS";
#endif
    printf("flashkm %d.%d.%d (library %s), %s\n", FKM_VERSION_MAJOR, FKM_VERSION_MINOR,
           FKM_VERSION_PATCH, fkm_version_string(), faiss);
    return fkm_version() == FKM_VERSION_NUMBER ? FKM_EXIT_OK : FKM_EXIT_FAIL;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 2, argv + 2);
  const char *names[sizeof commands / sizeof commands[0]];
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) names[i] = commands[i].name;
  const char *near = fkm_cli_closest(cmd, strlen(cmd), names, sizeof names / sizeof names[0]);
  if (near)
    fkm_cli_error("unknown command '%s' (did you mean '%s'?)", cmd, near);
  else
    fkm_cli_error("unknown command '%s' (try flashkm --help)", cmd);
  return FKM_EXIT_USAGE;
}
