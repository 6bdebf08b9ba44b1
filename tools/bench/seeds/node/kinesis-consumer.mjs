// A Kinesis consumer as the seeds write one: AWS SDK for JavaScript v3, records in order, one
// PutItem each that keeps the newest sequence number per partition key. The first record that
// fails stops the batch, so Lambda retries from it and the records after it keep their order.
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";

const tableName = process.env.TABLE_NAME;
const dynamodb = new DynamoDBClient({});

export async function handler(event) {
  for (const record of event.Records) {
    const { partitionKey, sequenceNumber, data } = record.kinesis;
    const sequence = sequenceNumber.padStart(64, "0");
    try {
      const payload = JSON.parse(Buffer.from(data, "base64").toString("utf8"));
      await dynamodb.send(
        new PutItemCommand({
          TableName: tableName,
          Item: {
            eventId: { S: partitionKey },
            sequence: { S: sequence },
            payload: { S: JSON.stringify(payload) },
          },
          ConditionExpression: "attribute_not_exists(eventId) OR #s < :s",
          ExpressionAttributeNames: { "#s": "sequence" },
          ExpressionAttributeValues: { ":s": { S: sequence } },
        }),
      );
    } catch (error) {
      if (error.name !== "ConditionalCheckFailedException") {
        return { batchItemFailures: [{ itemIdentifier: sequenceNumber }] };
      }
    }
  }
  return { batchItemFailures: [] };
}
