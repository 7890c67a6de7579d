// Validates Kubernetes manifests against the official OpenAPI schemas, through the npm package
// kubernetes-models (each model's validate()), and prints them as JSON for the caller's own
// checks (tests/package/test_k8s.py installs the packages and runs this).
//
//   node validate_k8s.mjs FILE.yaml...      (NODE_PATH: the node_modules holding the packages)
//
// Exit 0 with a JSON array of every object on stdout; exit 1 naming the file, the object and
// the schema error.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// kubernetes-models 5 is ESM only and exports no require() entry: import its files by path.
const modules = process.env.NODE_PATH;
if (!modules) throw new Error("set NODE_PATH to the node_modules holding kubernetes-models");
const load = (file) => import(pathToFileURL(path.join(modules, file)).href);
const YAML = (await load("yaml/dist/index.js")).default;

// apiVersion "apps/v1" -> kubernetes-models/apps/v1/index.js; core "v1" -> kubernetes-models/v1.
async function modelFor(apiVersion, kind) {
  const module = await load(`kubernetes-models/${apiVersion}/index.js`);
  const Model = module[kind];
  if (!Model) throw new Error(`no model for ${apiVersion} ${kind}`);
  return Model;
}

// The schemas allow fields they do not know (the API server drops them with a warning), so a
// misspelt key would pass validate(). The compiled schema validator reads every property its
// schema names (and every key of a map): run it once more on proxies that record the keys it
// reads. A key it never read is one the schema does not know.
async function schemaValidator(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const name = (group.split(".")[0].charAt(0).toUpperCase() + group.split(".")[0].slice(1)) +
    version.charAt(0).toUpperCase() + version.slice(1) + kind;
  return (await load(`kubernetes-models/_schemas/IoK8sApi${name}.js`)).validate;
}

function unknownKeys(obj, validate) {
  const unread = new Map();  // path -> set of keys not read yet
  const wrap = (value, where) => {
    if (typeof value !== "object" || value === null) return value;
    const keys = new Set(Array.isArray(value) ? [] : Object.keys(value));
    unread.set(where, keys);
    return new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === "string" && keys.has(key)) {
          keys.delete(key);
        }
        const inner = Reflect.get(target, key, receiver);
        return typeof key === "string" && Object.prototype.hasOwnProperty.call(target, key)
          ? wrap(inner, Array.isArray(target) ? `${where}[${key}]` : `${where}.${key}`) : inner;
      },
    });
  };
  const cache = new Map();
  const wrapOnce = (value, where) => {
    if (!cache.has(where)) cache.set(where, wrap(value, where));
    return cache.get(where);
  };
  validate(wrapOnce(obj, ""));
  return [...unread].flatMap(([where, keys]) => [...keys].map((key) => `${where}.${key}`));
}

const objects = [];
let failed = false;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      console.error(`${file}: YAML error: ${doc.errors[0].message}`);
      failed = true;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const label = `${file}: ${obj.kind} ${obj.metadata?.name}`;
    try {
      const Model = await modelFor(obj.apiVersion, obj.kind);
      new Model(obj).validate();
      const found = unknownKeys(obj, await schemaValidator(obj.apiVersion, obj.kind));
      if (found.length) throw new Error(`fields the schema does not know: ${found.join(", ")}`);
      objects.push({ file: path.basename(file), object: obj });
    } catch (error) {
      console.error(`${label}: ${error.message}`);
      failed = true;
    }
  }
}
if (failed) process.exit(1);
console.log(JSON.stringify(objects));
