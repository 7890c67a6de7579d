#include "common/protocol.h"

#include <google/protobuf/stubs/common.h>

#include <algorithm>
#include <limits>
#include <vector>

#if GOOGLE_PROTOBUF_VERSION < 4022000
#include <google/protobuf/stubs/logging.h>
#define STAMPEDE_HAVE_LOG_SILENCER 1
#endif

namespace stampede::common {

namespace {

bool addFits(uint64_t a, uint64_t b) {
  return b <= std::numeric_limits<uint64_t>::max() - a;
}

// A histogram's sum: a valid wire sum is >= 0 (min_us * count <= sum), as is every sum we
// hold, so the one bound to check is the top.
bool sumFits(int64_t a, int64_t b) {
  return a >= 0 && b >= 0 && b <= std::numeric_limits<int64_t>::max() - a;
}

bool isIdle(const StepStats& s) {
  if (s.requests || s.errors || s.cancelled || s.dropped || s.bytes_in || s.bytes_out ||
      s.http2_responses || s.latency_us.count() || s.service_us.count() ||
      s.schedule_lag_us.count() || s.same_worker_us.count() || s.cross_worker_us.count() ||
      s.reconnect_us.count())
    return false;
  return std::all_of(s.errors_by_kind.begin(), s.errors_by_kind.end(),
                     [](const auto& kind) { return kind.second == 0; }) &&
         std::all_of(s.counters.begin(), s.counters.end(),
                     [](const auto& c) { return c.second == 0; });
}

std::span<const int64_t> countsOf(const wire::Histogram& in) {
  return {in.counts().data(), size_t(in.counts_size())};
}

bool histogramValid(const wire::Histogram& in) {
  return Histogram::validEncoded(in.layout(), countsOf(in), in.count(), in.overflow(), in.min_us(),
                                 in.max_us(), in.sum_us());
}

std::string cutBody(const std::string& body) {
  return body.substr(0, kMaxErrorBodyBytes);
}

bool parseEnvelope(const void* data, size_t size, wire::Envelope& envelope) {
  // Checked before parsing: protobuf takes an int size, and the socket limit may be unset.
  if (data == nullptr || size == 0 || size > size_t(kMaxMessageBytes))
    return false;
#ifdef STAMPEDE_HAVE_LOG_SILENCER
  // protobuf logs every string field with invalid UTF-8 it refuses; a peer sending garbage
  // would flood stderr. A refused frame is counted by the caller instead.
  const google::protobuf::LogSilencer quiet;
#endif
  if (!envelope.ParseFromArray(data, int(size)))
    return false;
  // Random bytes often parse as a message of unknown fields only; without a body it is noise.
  return envelope.body_case() != wire::Envelope::BODY_NOT_SET;
}

} // namespace

std::string encodeEnvelope(const wire::Envelope& envelope) {
  return envelope.SerializeAsString();
}

std::optional<wire::Envelope> decodeEnvelope(const void* data, size_t size) {
  wire::Envelope envelope;
  if (!parseEnvelope(data, size, envelope))
    return std::nullopt;
  return envelope;
}

wire::Envelope* decodeEnvelope(const void* data, size_t size, google::protobuf::Arena& arena) {
  auto* envelope = google::protobuf::Arena::CreateMessage<wire::Envelope>(&arena);
  return parseEnvelope(data, size, *envelope) ? envelope : nullptr;
}

void statsToWire(const StatsBook& book, wire::Stats& out) {
  out.clear_steps();
  for (size_t i = 0; i < book.steps.size(); ++i) {
    const StepStats& s = book.steps[i];
    if (isIdle(s))
      continue;
    wire::StepStats& w = *out.add_steps();
    w.set_step(uint32_t(i));
    w.set_requests(s.requests);
    w.set_errors(s.errors);
    w.set_cancelled(s.cancelled);
    w.set_dropped(s.dropped);
    w.set_bytes_in(s.bytes_in);
    w.set_bytes_out(s.bytes_out);
    for (const auto& [kind, n] : s.errors_by_kind)
      if (n > 0)
        (*w.mutable_errors_by_kind())[kind] = n;
    w.set_http2_responses(s.http2_responses);
    for (const auto& [name, n] : s.counters)
      if (n > 0)
        (*w.mutable_counters())[name] = n;
    if (s.latency_us.count() > 0)
      histogramToWire(s.latency_us, *w.mutable_latency());
    if (s.service_us.count() > 0)
      histogramToWire(s.service_us, *w.mutable_service());
    if (s.schedule_lag_us.count() > 0)
      histogramToWire(s.schedule_lag_us, *w.mutable_schedule_lag());
    if (s.same_worker_us.count() > 0)
      histogramToWire(s.same_worker_us, *w.mutable_e2e_same_worker());
    if (s.cross_worker_us.count() > 0)
      histogramToWire(s.cross_worker_us, *w.mutable_e2e_cross_worker());
    if (s.reconnect_us.count() > 0)
      histogramToWire(s.reconnect_us, *w.mutable_reconnect());
  }
}

bool statsFromWire(const wire::Stats& in, size_t step_count, StatsBook& into) {
  // Distinct steps below step_count: a sender writes each step once.
  if (size_t(in.steps_size()) > step_count)
    return false;
  std::vector<bool> seen(step_count, false);
  static const StepStats kEmpty; // stands in for steps `into` does not have yet

  for (int k = 0; k < in.steps_size(); ++k) {
    const wire::StepStats& w = in.steps(k);
    const size_t step = w.step();
    // A sender writes each step once; a repeat means a corrupt or forged message.
    if (step >= step_count || seen[step])
      return false;
    seen[step] = true;
    const StepStats& current = step < into.steps.size() ? into.steps[step] : kEmpty;
    if (!addFits(current.requests, w.requests()) || !addFits(current.errors, w.errors()) ||
        !addFits(current.cancelled, w.cancelled()) || !addFits(current.dropped, w.dropped()) ||
        !addFits(current.bytes_in, w.bytes_in()) || !addFits(current.bytes_out, w.bytes_out()) ||
        !addFits(current.http2_responses, w.http2_responses()))
      return false;
    for (const auto& [kind, n] : w.errors_by_kind()) {
      const auto it = current.errors_by_kind.find(kind);
      if (!addFits(it == current.errors_by_kind.end() ? 0 : it->second, n))
        return false;
    }
    for (const auto& [name, n] : w.counters()) {
      const auto it = current.counters.find(name);
      if (!addFits(it == current.counters.end() ? 0 : it->second, n))
        return false;
    }
    // Checked in place, never decoded into a 139 KB histogram: the master merges thousands
    // of these a second, straight from the run-length form.
    auto bad = [](bool has, const wire::Histogram& h, const Histogram& current_h) {
      return has && (!histogramValid(h) || !addFits(current_h.count(), h.count()) ||
                     !sumFits(current_h.sumUs(), h.sum_us()));
    };
    if (bad(w.has_latency(), w.latency(), current.latency_us) ||
        bad(w.has_service(), w.service(), current.service_us) ||
        bad(w.has_schedule_lag(), w.schedule_lag(), current.schedule_lag_us) ||
        bad(w.has_e2e_same_worker(), w.e2e_same_worker(), current.same_worker_us) ||
        bad(w.has_e2e_cross_worker(), w.e2e_cross_worker(), current.cross_worker_us) ||
        bad(w.has_reconnect(), w.reconnect(), current.reconnect_us))
      return false;
  }

  // Everything checked: from here on nothing can fail.
  if (into.steps.size() < step_count)
    into.steps.resize(step_count);
  for (int k = 0; k < in.steps_size(); ++k) {
    const wire::StepStats& w = in.steps(k);
    StepStats& s = into.steps[w.step()];
    s.requests += w.requests();
    s.errors += w.errors();
    s.cancelled += w.cancelled();
    s.dropped += w.dropped();
    s.bytes_in += w.bytes_in();
    s.bytes_out += w.bytes_out();
    for (const auto& [kind, n] : w.errors_by_kind())
      if (n > 0)
        s.errors_by_kind[kind] += n;
    s.http2_responses += w.http2_responses();
    for (const auto& [name, n] : w.counters())
      if (n > 0)
        s.counters[name] += n;
    if (w.has_latency())
      addHistogramFromWire(w.latency(), s.latency_us);
    if (w.has_service())
      addHistogramFromWire(w.service(), s.service_us);
    if (w.has_schedule_lag())
      addHistogramFromWire(w.schedule_lag(), s.schedule_lag_us);
    if (w.has_e2e_same_worker())
      addHistogramFromWire(w.e2e_same_worker(), s.same_worker_us);
    if (w.has_e2e_cross_worker())
      addHistogramFromWire(w.e2e_cross_worker(), s.cross_worker_us);
    if (w.has_reconnect())
      addHistogramFromWire(w.reconnect(), s.reconnect_us);
  }
  return true;
}

void histogramToWire(const Histogram& h, wire::Histogram& out) {
  out.set_layout(Histogram::kLayoutId);
  const std::vector<int64_t> counts = h.encodeCounts();
  out.mutable_counts()->Assign(counts.begin(), counts.end());
  out.set_count(h.count());
  out.set_overflow(h.overflow());
  out.set_min_us(h.minUs());
  out.set_max_us(h.maxUs());
  out.set_sum_us(h.sumUs());
}

void addHistogramFromWire(const wire::Histogram& in, Histogram& into) {
  into.addEncoded(countsOf(in), in.count(), in.overflow(), in.min_us(), in.max_us(), in.sum_us());
}

void seqRunsToWire(const SeqRanges& set, wire::SeqRuns& out) {
  out.clear_runs();
  uint64_t end = 0;
  for (const auto& [first, last] : set.runs()) {
    out.add_runs(first - end);
    out.add_runs(last - first + 1);
    end = last;
  }
}

std::optional<std::vector<std::pair<uint64_t, uint64_t>>> seqRunsFromWire(const wire::SeqRuns& in) {
  if (in.runs_size() % 2 != 0)
    return std::nullopt;
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  runs.reserve(size_t(in.runs_size() / 2));
  uint64_t end = 0;
  for (int i = 0; i < in.runs_size(); i += 2) {
    const uint64_t gap = in.runs(i);
    const uint64_t length = in.runs(i + 1);
    // Ascending and disjoint: every run after the first starts past the previous one's end.
    if (length == 0 || gap == 0 || !addFits(end, gap) || !addFits(end + gap, length - 1))
      return std::nullopt;
    const uint64_t first = end + gap;
    end = first + length - 1;
    runs.emplace_back(first, end);
  }
  return runs;
}

std::string toValidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xe  ? 3
                    : (c >> 3) == 0x1e ? 4
                                       : 0;
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k)
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (valid && length > 1) {
      // Reject overlong forms, surrogates and values above U+10FFFF, as protobuf does.
      uint32_t cp = c & (0xff >> (length + 1));
      for (size_t k = 1; k < length; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3f);
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      valid = cp >= kMin[length] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

void errorToWire(const ErrorContext& error, int64_t clock_offset_ns, wire::ErrorContext& out) {
  out.set_worker(error.worker_index);
  out.set_vu(error.vu);
  out.set_flow(toValidUtf8(error.flow));
  out.set_step(toValidUtf8(error.step));
  out.set_method(toValidUtf8(error.method));
  out.set_url(toValidUtf8(error.url));
  out.set_status(error.status);
  out.set_error_kind(toValidUtf8(error.error_kind));
  out.set_detail(toValidUtf8(error.detail));
  out.clear_headers();
  for (const auto& [name, value] : error.headers) {
    wire::Header& h = *out.add_headers();
    h.set_name(toValidUtf8(name));
    h.set_value(toValidUtf8(value));
  }
  out.set_body(cutBody(error.body));
  out.set_at_master_ns(steadyNs(error.at) - clock_offset_ns);
  out.set_wall_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(error.wall_at.time_since_epoch())
          .count());
}

ErrorContext errorFromWire(const wire::ErrorContext& in) {
  ErrorContext e;
  e.worker_index = in.worker();
  e.vu = in.vu();
  e.flow = in.flow();
  e.step = in.step();
  e.method = in.method();
  e.url = in.url();
  e.status = in.status();
  e.error_kind = in.error_kind();
  e.detail = in.detail();
  e.headers.reserve(size_t(in.headers_size()));
  for (const wire::Header& h : in.headers())
    e.headers.emplace_back(h.name(), h.value());
  e.body = cutBody(in.body());
  e.at = fromSteadyNs(in.at_master_ns());
  // Clamped so that a forged value cannot overflow the conversion to the clock's ticks.
  using WallDuration = std::chrono::system_clock::duration;
  constexpr int64_t kWallLimitMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(WallDuration::max()).count() - 1;
  e.wall_at = std::chrono::system_clock::time_point(std::chrono::duration_cast<WallDuration>(
      std::chrono::milliseconds(std::clamp(in.wall_ms(), -kWallLimitMs, kWallLimitMs))));
  return e;
}

int64_t steadyNs(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

SteadyTime fromSteadyNs(int64_t ns) {
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(std::chrono::nanoseconds(ns)));
}

ClockEstimate estimateOffset(std::span<const ClockSample> samples) {
  ClockEstimate best;
  for (const ClockSample& s : samples) {
    const int64_t rtt = s.master_recv_ns - s.master_send_ns;
    if (rtt < 0 || (best.rtt_ns >= 0 && rtt >= best.rtt_ns))
      continue;
    // send + rtt / 2 rather than (send + recv) / 2: steady-clock ns sums can overflow.
    // The worker's figure is a peer's: wrap (unsigned) rather than overflow on a forged one.
    best.offset_ns = int64_t(uint64_t(s.worker_ns) - uint64_t(s.master_send_ns + rtt / 2));
    best.rtt_ns = rtt;
  }
  return best;
}

} // namespace stampede::common
