// junit.xml: a run as a JUnit test suite for CI servers (Jenkins, GitLab), written from the
// same JSON as report.json. One testsuite per run; each threshold is a testcase, and so are
// the run's expectations, failed with the first error when an error halted the run. Valid
// against tests/junit.xsd. Any thread (a pure function).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace stampede::master {

// `report`: what buildReport() returned (or a report.json read back).
std::string junitXml(const nlohmann::json& report);

} // namespace stampede::master
