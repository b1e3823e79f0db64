// Evaluates IAM requests with @cloud-copilot/iam-simulate (AWS's documented evaluation
// logic: explicit deny, identity and resource policies, permissions boundaries,
// condition operators, policy variables), for tests/tests/iam.rs.
//
// Usage: node iam_simulate.mjs <path of iam-simulate's dist/esm/index.js>
// stdin: a JSON array of simulations (iam-simulate's `Simulation`); stdout: a JSON
// array, one {result, errors} per simulation, where result is Allowed,
// ExplicitlyDenied or ImplicitlyDenied, or null with the errors iam-simulate found in
// the input (an unknown action or condition key, a malformed policy).

import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

const { runSimulation } = await import(pathToFileURL(process.argv[2]).href)
const simulations = JSON.parse(readFileSync(0, 'utf8'))
const answers = []
for (const simulation of simulations) {
  const answer = await runSimulation(
    { serviceControlPolicies: [], resourceControlPolicies: [], ...simulation },
    {}
  )
  answers.push(
    answer.resultType === 'error'
      ? { result: null, errors: answer.errors }
      : { result: answer.overallResult, errors: null }
  )
}
process.stdout.write(JSON.stringify(answers))
