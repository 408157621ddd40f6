// A Feathers 5 app on Koa with an in-memory service (@feathersjs/memory) holding the records of
// a seed file. Feathers pages it: `$limit`/`$skip`, `{total, limit, skip, data}` in the body, and
// its query syntax filters and sorts (`id[$gt]=…`, `updated_at[$gt]=…`, `$sort[id]=1`).
// POST and PATCH /messages change the data between runs; GET /truth returns every record
// unpaginated (the server's own data, for the tests to compare).
//
// Run: node feathers_server.mjs PORT SEED_FILE
import { readFileSync } from 'node:fs'
import { feathers } from '@feathersjs/feathers'
import { bodyParser, errorHandler, koa, rest } from '@feathersjs/koa'
import { MemoryService } from '@feathersjs/memory'

const [port, seedFile] = process.argv.slice(2)
const app = koa(feathers())
app.use(errorHandler())
app.use(bodyParser())
app.configure(rest())

app.use('messages', new MemoryService({ paginate: { default: 25, max: 100 }, multi: true }))
// Query strings arrive as text; like any Feathers app (a query schema would do the same), the
// numeric field's operators are converted before the adapter compares them with numbers.
app.service('messages').hooks({
  before: {
    find: [
      async (context) => {
        const id = context.params.query?.id
        if (id !== null && typeof id === 'object') {
          for (const op of Object.keys(id)) id[op] = Number(id[op])
        }
      }
    ]
  }
})
app.use('truth', {
  async find() {
    return app.service('messages').find({ paginate: false, query: { $sort: { id: 1 } } })
  }
})

await app.service('messages').create(JSON.parse(readFileSync(seedFile, 'utf8')))
await app.listen(Number(port), '127.0.0.1')
console.log(`feathers listening on 127.0.0.1:${port}`)
