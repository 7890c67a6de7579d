#include "common/keygen_command.h"
#include "common/process_limits.h"
#include "master/cli.h"
#include "master/embedded_worker.h"
#include "master/report_html.h"
#include "master/run.h"

#include <cstdio>
#include <fmt/core.h>
#include <string_view>

int main(int argc, char** argv) {
  using namespace stampede::master;
  stampede::common::raiseFileLimit();
  if (argc > 1 && std::string_view(argv[1]) == "keygen")
    return stampede::common::runKeygen("master", "master", argc - 2, argv + 2);
  CliOptions cli;
  try {
    cli = parseCli(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "master: {} (see master --help)\n", e.what());
    return 2;
  }
  if (cli.help) {
    fmt::print("{}", usageText());
    return 0;
  }
  if (cli.version) {
    fmt::print("stampede master {}\n", STAMPEDE_VERSION);
    return 0;
  }
  if (!cli.render_html_in.empty()) {
    if (auto error = renderHtmlFile(cli.render_html_in, cli.render_html_out); !error.empty()) {
      fmt::print(stderr, "master: --render-html: {}\n", error);
      return 2;
    }
    return 0;
  }
  return runScenario(cli, startEmbeddedWorker);
}
