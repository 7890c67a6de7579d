#include "master/console.h"

#include "master/report.h"
#include "master/report_messaging.h"

#include <fmt/format.h>

#include <algorithm>

namespace stampede::master {
namespace {

double ms(int64_t us) {
  return double(us) / 1000.0;
}

std::string indent(std::string_view text, std::string_view prefix) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (c == '\r')
      continue;
    if (line_start && c != '\n')
      out.append(prefix);
    out.push_back(c);
    line_start = c == '\n';
  }
  return out;
}

std::string summaryRow(std::string_view name, const common::StepStats& s, double duration_s) {
  const auto& h = s.latency_us;
  return fmt::format(
      "{:<32.32} {:>10} {:>9.1f} {:>8} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}\n", name,
      s.requests, duration_s > 0 ? double(s.requests) / duration_s : 0.0, s.errors,
      ms(h.percentileUs(50)), ms(h.percentileUs(90)), ms(h.percentileUs(99)),
      ms(h.percentileUs(99.9)), ms(h.maxUs()));
}

// The length of the UTF-8 sequence at text[i], or 0 when the bytes there are not one.
size_t utf8Length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t n = 0;
  unsigned min = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2;
    min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3;
    min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > text.size())
    return 0;
  unsigned code = lead & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80)
      return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
    return 0;
  return n;
}

} // namespace

std::string printable(std::string_view text, bool keep_lines) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(char(c));
      ++i;
      continue;
    }
    if (c == '\n' || c == '\t') {
      if (keep_lines)
        out.push_back(char(c));
      else
        out += c == '\n' ? "\\n" : "\\t";
      ++i;
      continue;
    }
    if (c == '\r') {
      out += "\\r";
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const size_t n = utf8Length(text, i); n > 0) {
        // U+0080..U+009F are the C1 controls (0x9b starts an escape sequence on some terminals).
        if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0)
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[i + 1]));
        else
          out.append(text.substr(i, n));
        i += n;
        continue;
      }
    }
    out += fmt::format("\\x{:02x}", c);
    ++i;
  }
  return out;
}

std::string formatLiveLine(const LiveFigures& f, bool bar) {
  std::string progress;
  if (bar) {
    constexpr int kWidth = 20;
    int filled = f.total_s > 0 ? int(std::clamp(f.elapsed_s / f.total_s, 0.0, 1.0) * kWidth) : 0;
    progress = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }
  return fmt::format(
      "{}{:6.1f}s / {:.0f}s  users {:>5}  rps {:>8.0f}  p50 {:7.2f}ms  p99 {:7.2f}ms  "
      "requests {}  errors {}  workers {}/{}",
      progress, f.elapsed_s, f.total_s, f.users, f.rps, f.p50_ms, f.p99_ms, f.requests, f.errors,
      f.workers_alive, f.workers_total);
}

std::string formatFirstError(const common::ErrorContext& e, common::SteadyTime t0) {
  std::string out = "=== FIRST ERROR ";
  out += std::string(60, '=') + "\n";
  out += fmt::format("  at        {:.3f}s into the run\n",
                     std::chrono::duration<double>(e.at - t0).count());
  out += fmt::format("  where     worker {}, virtual user {}, flow \"{}\", step \"{}\"\n",
                     e.worker_index, e.vu, printable(e.flow), printable(e.step));
  out += fmt::format("  request   {} {}\n", printable(e.method), printable(e.url));
  if (e.status)
    out += fmt::format("  status    {}\n", e.status);
  out += fmt::format("  kind      {}\n", printable(e.error_kind));
  if (!e.detail.empty())
    out += fmt::format("  detail    {}\n", printable(e.detail));
  if (!e.headers.empty()) {
    out += "  headers\n";
    for (const auto& [name, value] : e.headers)
      out += fmt::format("    {}: {}\n", printable(name), printable(value));
  }
  if (!e.body.empty()) {
    out += "  body (first 1 KiB)\n";
    out += indent(printable(e.body, true), "    ");
    if (out.back() != '\n')
      out.push_back('\n');
  }
  out += std::string(76, '=') + "\n";
  return out;
}

std::string formatSummary(const RunResult& r) {
  std::string out =
      fmt::format("\n{:<32} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "step", "requests",
                  "rps", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms");
  for (size_t i = 0; i < r.book.steps.size(); ++i)
    out += summaryRow(printable(r.scenario->step_table[i].name), r.book.steps[i], r.duration_s);
  auto total = r.book.total();
  out += summaryRow("TOTAL", total, r.duration_s);
  out += formatMessagingSummary(r);
  // Messaging: how long each reconnect took, from the loss to back up with its subscriptions.
  for (size_t i = 0; i < r.book.steps.size(); ++i)
    if (const auto& h = r.book.steps[i].reconnect_us; h.count() > 0)
      out += fmt::format("reconnects of {}: {}, took p50 {:.1f} ms, max {:.1f} ms\n",
                         printable(r.scenario->step_table[i].name), h.count(),
                         double(h.percentileUs(50)) / 1000, double(h.maxUs()) / 1000);
  if (r.scenario->anyOpen()) {
    // Latency above is from the scheduled time; these say where it went.
    const auto row = [](const char* what, const common::Histogram& h) {
      return fmt::format("{:<32} {:>39.2f} {:>9.2f} {:>9.2f} {:>9.2f}\n", what,
                         double(h.percentileUs(50)) / 1000, double(h.percentileUs(90)) / 1000,
                         double(h.percentileUs(99)) / 1000, double(h.maxUs()) / 1000);
    };
    out += row("  service time (from the send)", total.service_us);
    out += row("  schedule lag", total.schedule_lag_us);
    out += fmt::format("dropped (max_in_flight reached): {}\n", total.dropped);
    if (total.schedule_lag_us.percentileUs(99) > kSaturatedLagUs)
      out += fmt::format("WARNING: load generator saturated: figures understate latency "
                         "(schedule lag p99 {:.1f} ms)\n",
                         double(total.schedule_lag_us.percentileUs(99)) / 1000);
  }
  if (total.cancelled)
    out += fmt::format("cancelled in flight at the halt: {}\n", total.cancelled);
  for (const auto& [kind, count] : total.errors_by_kind)
    out += fmt::format("errors {:<24} {}\n", kind, count);
  if (r.halt && r.halt->requests_sent_after_first_error) {
    // The stop, measured: what the cluster sent after the error that halted it.
    std::optional<double> last_stop_ms;
    for (const auto& w : r.workers)
      if (w.stop_ms)
        last_stop_ms = std::max(last_stop_ms.value_or(*w.stop_ms), *w.stop_ms);
    out +=
        fmt::format("requests sent after the first error: {} (clock error up to {:.3f} ms)",
                    *r.halt->requests_sent_after_first_error, r.halt->clock_error_ms.value_or(0));
    if (*r.halt->requests_sent_after_first_error > 0 && last_stop_ms)
      out += fmt::format(", the last one {:.3f} ms after it", *last_stop_ms);
    out += "\n";
  }
  if (r.halt && !r.halt->also_failed.empty()) {
    out += "also failed before the halt:\n";
    for (const auto& e : r.halt->also_failed)
      out +=
          fmt::format("  worker {} step \"{}\" {} at {:.3f}s\n", e.worker_index, printable(e.step),
                      printable(e.error_kind), std::chrono::duration<double>(e.at - r.t0).count());
  }
  // As report.json's workers[].divergent: the host whose figures skew the merged ones, and why.
  for (const auto& w : r.workers)
    if (!w.divergent.empty())
      out += fmt::format("DIVERGENT worker {} ({}): {}\n", w.id, printable(w.address),
                         printable(w.divergent));
  for (const auto& t : r.thresholds)
    out += fmt::format("threshold {:<36} {:>12}  {}\n", printable(t.expr),
                       t.value ? fmt::format("{:.4g}", *t.value) : std::string("no data"),
                       t.passed ? "passed" : "FAILED");
  if (r.halt && !r.halt->threshold.empty())
    out += fmt::format("halted by threshold {} (value {:.4g})\n", printable(r.halt->threshold),
                       r.halt->observed.value_or(0));
  else if (r.halt && r.halt->observed)
    out +=
        fmt::format("halted by {} ({:.4g})\n", haltReasonName(r.halt->reason), *r.halt->observed);
  for (const auto& warning : r.warnings)
    out += fmt::format("WARNING: {}\n", printable(warning));
  out += fmt::format("outcome: {} (exit {}) after {:.1f}s\n", outcomeName(r.outcome), r.exit_code,
                     r.duration_s);
  return out;
}

} // namespace stampede::master
