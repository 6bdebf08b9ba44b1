// An SQS consumer as the seeds write one: AWS SDK for JavaScript v3, one conditional PutItem per
// record, in turn. A record whose body is not JSON, has no eventId, or whose write fails is
// reported in batchItemFailures; an eventId already stored is a duplicate, not a failure.
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";

const tableName = process.env.TABLE_NAME;
const dynamodb = new DynamoDBClient({});

export async function handler(event) {
  const batchItemFailures = [];
  for (const record of event.Records) {
    try {
      const body = JSON.parse(record.body);
      if (body.eventId === undefined) throw new Error("no eventId");
      await dynamodb.send(
        new PutItemCommand({
          TableName: tableName,
          Item: {
            eventId: { S: String(body.eventId) },
            body: { S: record.body },
            messageId: { S: record.messageId },
          },
          ConditionExpression: "attribute_not_exists(eventId)",
        }),
      );
    } catch (error) {
      if (error.name !== "ConditionalCheckFailedException") {
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
  }
  return { batchItemFailures };
}
