#include "master/report_html.h"

#include "common/text.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

namespace stampede::embedded {
// Generated at build time by cmake/embed_file.cmake (master/CMakeLists.txt).
extern const std::string_view kChartJs;       // /usr/share/javascript/chart.js/chart.min.js
extern const std::string_view kReportPageJs;  // master/report_page/report.js
extern const std::string_view kReportPageCss; // master/report_page/report.css
} // namespace stampede::embedded

namespace stampede::master {
namespace {

using nlohmann::json;

// JSON inside <script>: "</" would end the element early; "<\/" is the same JSON string.
std::string scriptSafe(std::string text) {
  for (size_t at = text.find("</"); at != std::string::npos; at = text.find("</", at + 3))
    text.replace(at, 2, "<\\/");
  return text;
}

} // namespace

json seriesJson(const std::vector<SeriesPoint>& series) {
  json columns = json::object();
  auto column = [&](const char* name, auto field) {
    json values = json::array();
    for (const auto& p : series)
      values.push_back(p.*field);
    columns[name] = std::move(values);
  };
  column("elapsed_s", &SeriesPoint::elapsed_s);
  column("users", &SeriesPoint::users);
  column("requests", &SeriesPoint::requests);
  column("rps", &SeriesPoint::rps);
  column("errors", &SeriesPoint::errors);
  column("dropped", &SeriesPoint::dropped);
  column("p50_ms", &SeriesPoint::p50_ms);
  column("p90_ms", &SeriesPoint::p90_ms);
  column("p99_ms", &SeriesPoint::p99_ms);
  column("max_ms", &SeriesPoint::max_ms);
  column("service_p50_ms", &SeriesPoint::service_p50_ms);
  column("service_p99_ms", &SeriesPoint::service_p99_ms);
  column("lag_p99_ms", &SeriesPoint::lag_p99_ms);
  return columns;
}

std::string reportHtml(const json& report, const json& series) {
  const json data = {{"report", report}, {"series", series}};
  const std::string name = report.value("name", std::string("stampede"));
  const std::string outcome = report.value("outcome", std::string());
  std::string page;
  page.reserve(embedded::kChartJs.size() + 4096);
  page += "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += fmt::format("<title>Stampede: {} ({})</title>\n", common::markupEscape(name),
                      common::markupEscape(outcome));
  page += "<style>\n";
  page += embedded::kReportPageCss;
  page += "</style>\n</head>\n<body>\n<main id=\"report\">"
          "<noscript>This report is drawn by its script: enable JavaScript, or read the "
          "report.json beside it.</noscript></main>\n";
  // Invalid UTF-8 is replaced, as in report.json.
  page += "<script type=\"application/json\" id=\"stampede-data\">";
  page += scriptSafe(data.dump(-1, ' ', false, json::error_handler_t::replace));
  page += "</script>\n<script>\n";
  page += embedded::kChartJs;
  page += "\n</script>\n<script>\n";
  page += embedded::kReportPageJs;
  page += "\n</script>\n</body>\n</html>\n";
  return page;
}

std::string renderHtmlFile(const std::string& in_path, const std::string& out_path) {
  std::ifstream in(in_path, std::ios::binary);
  if (!in)
    return fmt::format("{}: cannot read: {}", in_path, std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  json data = json::parse(text.str(), nullptr, false);
  if (data.is_discarded() || !data.is_object())
    return fmt::format("{}: not a JSON object (expected a report.json)", in_path);
  json report = data.contains("report") ? data["report"] : data;
  json series = data.contains("series") ? data["series"] : seriesJson({});
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out)
    return fmt::format("{}: cannot write: {}", out_path, std::strerror(errno));
  out << reportHtml(report, series);
  if (!out.flush())
    return fmt::format("{}: cannot write: {}", out_path, std::strerror(errno));
  return "";
}

} // namespace stampede::master
