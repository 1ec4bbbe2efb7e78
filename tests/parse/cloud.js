// Cloud Code for Parse Server when it runs tests/parse/flow.js (and the
// benchmark's SDK flow): what the Multi-Store Inventory template does after a
// Transaction is saved, i.e. moves the Inventory row of its store and product
// by the signed quantity (Parse's atomic Increment). Like the template, it
// checks nothing: concurrent sales of more than the stock all succeed and
// onHand goes below zero, which the flow reports (the rule stockflow keeps
// and Parse does not). Loaded by bench/parse/server.js when PARSE_CLOUD
// names this file.
'use strict';

const SIGN = { receipt: 1, return: 1, transfer_in: 1, sale: -1, transfer_out: -1, adjustment: 1 };

Parse.Cloud.afterSave('Transaction', async (request) => {
  if (request.original) return; // created only
  const t = request.object;
  const sign = SIGN[t.get('type')];
  const quantity = Number(t.get('quantity'));
  if (!sign || !Number.isFinite(quantity) || !t.get('store') || !t.get('product')) return;
  const row = await new Parse.Query('Inventory')
    .equalTo('store', t.get('store'))
    .equalTo('product', t.get('product'))
    .first({ useMasterKey: true });
  if (!row) return;
  row.increment('onHand', sign * quantity);
  row.increment('available', sign * quantity);
  row.increment('version', 1);
  await row.save(null, { useMasterKey: true });
});
